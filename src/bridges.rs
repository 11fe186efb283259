//! The registry of bridges compiled into this binary: configuration section
//! name -> constructor. Adding a network is one crate plus one line here.
