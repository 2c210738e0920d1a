"""report.json as typed records (schema) and the terminal tables that show them."""
