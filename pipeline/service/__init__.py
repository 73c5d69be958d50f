"""`dictune serve`: the OpenAI-compatible transcription API, the review page and the corrections store."""
