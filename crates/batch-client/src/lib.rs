//! The OpenAI Files and Batches HTTP client and `BatchJobManager`: submit, poll, persist, resume and retrieve batches (not built yet).
