"""Putting a trained reranker in front of a search system: batch and HTTP.

``reorder`` (the pure decision: model order or the original, and why), ``rollout`` (sha256
bucket), ``scoring`` (run a ranker, never raise), ``engine`` (policy: rollout → score top-M →
decide; shared by both paths), ``records`` (a JSONL line / request body → RankingSet through
``mmrank.data.io_jsonl``), ``batch`` (streaming file rerank), ``app`` + ``schemas`` +
``middleware`` + ``metrics`` (the FastAPI service), ``model_slot`` (the served model and its
atomic swap). Nothing here imports the training stack. See docs/serving.md.
"""
