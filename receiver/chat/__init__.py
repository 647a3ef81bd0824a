"""The chat assistant: questions about incidents, answered from the store."""
