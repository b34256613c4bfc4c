"""Pretrained model zoo (imports as `mtmm_keras.zoo`): registry, entries, weights and model cards."""
