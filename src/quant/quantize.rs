//! Reference quantizers (ggml's `quantize_row_*_ref`), bit-exact. (Placeholder.)
