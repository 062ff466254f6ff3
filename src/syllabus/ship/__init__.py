"""Ship a model: export it for the runtimes that serve it (transformers, llama.cpp and Ollama,
onnxruntime and onnxruntime-genai), quantized for devices, and measure what each export costs
in quality, size and speed against the float32 model on this CPU."""
