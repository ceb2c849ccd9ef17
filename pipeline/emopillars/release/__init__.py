"""Publishing a finished dataset: the release checks, provenance and the Hugging Face Hub."""
