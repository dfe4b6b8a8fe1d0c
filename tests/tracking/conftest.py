import sys
from pathlib import Path

# mlflow_server.py is a helper module beside these tests.
sys.path.insert(0, str(Path(__file__).parent))
