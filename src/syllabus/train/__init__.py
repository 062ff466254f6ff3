"""Training: tokenizer, packing, the Llama model, the training loop, sampling."""
