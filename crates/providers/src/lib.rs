//! Provider traits for LLM, image and vision calls, their standard, flex, batch and simulated implementations, and the factory (not built yet).
