//! A xenstored: the store, the `xsd_sockmsg` wire protocol, and the Unix
//! socket and guest ring front ends sharing one engine.
