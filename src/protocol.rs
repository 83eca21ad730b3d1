//! Wire protocol: parsing and formatting, no I/O.
