//! Load generator used by the benchmarks.
