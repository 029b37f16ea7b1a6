"""Operations: load tests, backups, restore, rollback, vector migration and verification."""
