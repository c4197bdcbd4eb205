//! xl.cfg: the lexer and parser (as libxlu accepts it), libxl's typed domain
//! configuration, libxl's defaulting, and the `xl create -n` JSON document.
