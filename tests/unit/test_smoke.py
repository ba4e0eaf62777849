from ztgate.store.database import Database


def test_database_fixture_is_migrated(database: Database) -> None:
    database.ping()
