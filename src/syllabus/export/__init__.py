"""The format writers `syllabus export` uses (ship/ picks the model and the writer): Hugging Face
(hf.py), GGUF for llama.cpp with llama.cpp's own quantizer (gguf.py), the Ollama directory
(ollama.py), ONNX with onnxruntime's quantizers (onnx.py) and onnxruntime-genai's layout
(onnx_genai.py)."""
