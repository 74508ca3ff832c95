//! A faithful local OpenAI server (Files, Batches, Chat, Images) with simulated models and faults: the test double and offline default (not built yet).
