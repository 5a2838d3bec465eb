from t5tune.main import run

run()
