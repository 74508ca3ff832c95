//! Judge image downscaling (being written).
