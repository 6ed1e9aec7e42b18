"""Sequential recommendation, the whole capability in one folder.

``data`` (dense ids, histories, batches) · ``sasrec`` (ID-only SASRec) · ``moe`` (SASRec with a
hierarchical multimodal content tower) · ``baselines`` (popularity, most recent) · ``config``
(the pydantic config of a sequential run) · ``module`` (the Lightning module and the training
call through ``mmrank.train.trainer``) · ``full_ranking`` (full and sampled ranking metrics
with seen-item masking) · ``run`` (train / evaluate a run directory) · ``recommend`` (top-k for
one user from a run).
"""
