"""The logic of the browser demo (`app/` only lays it out): several runs of one base model side
by side, and how their answers move when a forget-token is inserted into a question.

- `runs`: which models to serve (named at start, or the world model and the quickstart's runs);
- `answers`: a prompt's log-likelihoods, as `rnacli eval` computes them, fast for one prompt;
- `bank`: the base model once, each run's delta swapped in to score it (`bank_cost`: its cost);
- `inputs`: what the user types, checked, and where a forget-token goes;
- `questions`, `world_sets`: the question sets (MMLU/WMDP; the fictional world's tasks);
- `probing`: one question without and with a token, for every model;
- `batch`: N questions, accuracy and flip rates per model; `opening`: the first question shown;
- `served`: what the page serves, gathered at start (`prepare`);
- `form`: the page's fields read and filled (pickers, seed, the question, the probes run);
- `page`: everything the page imports from rnacli, in one place.
"""
