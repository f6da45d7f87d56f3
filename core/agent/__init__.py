"""The agent: recall, prompt, the LLM, offline templates, redaction and the conversation log."""
