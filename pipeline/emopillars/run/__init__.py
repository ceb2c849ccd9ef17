"""Running the method over a run folder: its layout, the corpus ingest, the runner, the
manifest, the answer journal and the kept answers, and durable storage."""
