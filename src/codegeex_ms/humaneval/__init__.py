"""HumanEval-X evaluation: data and prompts (dataset), program assembly (programs), sandboxed execution
(sandbox, toolchains, execution) and pass@k reports (report). Driven by ``eval_humaneval_x.py``."""
