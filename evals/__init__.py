"""Offline evaluators and the nightly job (PrefEval-style, CIPHER edit cost, selection).
Filled in by the evaluator issue; the selection benchmark data lives in tests for now."""
