"""Storage: the engine, the tables, the migrations and every query the stages run."""
