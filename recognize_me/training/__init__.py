"""In: one job per model (splits, images, hyperparameters). Out: a model folder with model.keras,
history, metrics and thresholds; plus the per-epoch callbacks and the job planning.
"""
