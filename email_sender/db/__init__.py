"""SQL storage: table definitions, the engine, migrations and repositories."""
