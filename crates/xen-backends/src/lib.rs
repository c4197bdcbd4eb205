//! Xenbus backends (console, block, network) that talk to guest frontends
//! through grant tables and event channels from `xen-emu`'s backend API.
//! Built in the PV devices issue.
