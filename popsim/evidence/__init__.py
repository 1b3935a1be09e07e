"""Published targets the default model must reproduce (data files only)."""
