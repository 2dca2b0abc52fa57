"""Attacks on an unlearned run: does the forgotten knowledge come back?

- relearn (`relearn.py`): fine-tune the unlearned model for a few steps on part of the forget
  data, then ask about the rest (Deeb & Roger 2024, "Do unlearning methods remove information
  from language model weights?"; Hu et al. 2024; Lynch et al. 2024, "Eight methods to evaluate
  robust unlearning in LLMs");
- quantize (`quantize.py`): load the unlearned model in 8 or 4 bits through bitsandbytes
  (Zhang et al. 2024, "Catastrophic failure of LLM unlearning via quantization").

Both report the share of the forgotten accuracy that came back,
`(acc_attacked - acc_unlearned) / (acc_base - acc_unlearned)`, with a bootstrap interval, and
write into the run folder (`RUN/attacks/NAME/`, `folder.py`), never into its checkpoint.
`robustness.py` gathers both sides of robustness (the retain side from `rnacli report`'s
comparison, the forget side from the attacks) per run.
"""
