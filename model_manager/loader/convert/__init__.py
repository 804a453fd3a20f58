"""Converting a stored Hugging Face checkpoint (safetensors) to one GGUF file, as llama.cpp's engines read it.

- `checkpoint`: which architectures convert, and what config.json says about the model;
- `safetensors`: where each tensor's bytes are in the stored shards;
- `vocab`: the tokenizer as GGUF metadata;
- `plan`: every output tensor's name, type and size, and the GGUF header;
- `tensors`: one slice of one tensor converted (numpy, run off the event loop);
- `stream`: the GGUF file's bytes, produced tensor by tensor from ranged store reads.
"""
