//! The bundled async client (filled in by the client work).
