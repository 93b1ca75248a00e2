"""Kodcu evaluation: HumanEval and MBPP, pass@k, and the sandbox that runs generated code."""
