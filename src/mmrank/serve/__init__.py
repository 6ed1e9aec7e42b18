"""Putting a trained reranker in front of a search system: batch and HTTP.

``reorder`` (the pure decision: model order or the original, and why), ``rollout`` (sha256
bucket), ``scoring`` (run a ranker, never raise), ``policy`` (rollout → score top-M → decide;
shared by both paths), ``layout`` (a query's input layout: grouping, probes), ``records`` (a JSONL
line / request body → RankingSet through ``mmrank.data.io_jsonl``), ``batch`` + ``batch_output``
(streaming file rerank, its atomic output files), ``app`` + ``request_parse`` + ``schemas`` +
``middleware`` + ``prometheus`` + ``slow_clients`` (the FastAPI service), ``model_slot`` +
``reload_check`` (the served model, its checked atomic swap). Nothing here imports the training
stack. See docs/serving.md.
"""
