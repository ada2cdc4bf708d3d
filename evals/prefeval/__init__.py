"""PrefEval-style preference following (Zhao et al., ICLR 2025): read the benchmark's
own file format, build each arm's conversation, ask MCQ and generation questions,
judge the answers."""
