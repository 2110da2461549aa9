"""Trained (deep) encoding models and the training engine they share.

``neurovid.deep.training`` is the engine: seeding, device choice, an AdamW loop
with early stopping, atomic per-epoch checkpoints and metrics, and resuming
after an interruption. The models (LSTM, Sensorium ViViT, Vi-ST) live in their
own modules and call :func:`neurovid.deep.training.train_model`.
"""
