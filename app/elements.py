"""The UI's stable names, in one place: the browser tests and the Gradio API use these.

Each action has an ``elem_id`` for its control(s) and an ``api_name`` for the Gradio API.
"""

# Model panel
MODEL_SELECT = "model-select"
MODEL_LOAD = "model-load"
MODEL_STATUS = "model-status"

# Tabs
TAB_EVALUATE = "tab-evaluate"
TAB_TRAIN = "tab-train"
TAB_GENERATE = "tab-generate"
TAB_CRITIQUE = "tab-critique"
TAB_IMPACT = "tab-impact"
TAB_RUNS = "tab-runs"

# Evaluation tab
EVAL_TEXT = "eval-text"
EVAL_MODE = "eval-mode"
EVAL_EXAMPLE = "eval-example"
EVAL_BUTTON = "eval-button"
EVAL_VERDICT = "eval-verdict"
EVAL_RESULT = "eval-result"

# Training tab
TRAIN_PRESET = "train-preset"
TRAIN_START = "train-start"
TRAIN_CANCEL = "train-cancel"
TRAIN_STATUS = "train-status"
TRAIN_PROGRESS = "train-progress"
TRAIN_TRACE = "train-trace"
TRAIN_LOSS = "train-loss"
TRAIN_CHECKPOINT = "train-checkpoint"

# Generation tab
GEN_PROMPT = "gen-prompt"
GEN_ADVERSARIAL = "gen-adversarial"
GEN_TEMPERATURE = "gen-temperature"
GEN_MAX_TOKENS = "gen-max-tokens"
GEN_BUTTON = "gen-button"
GEN_STOP = "gen-stop"
GEN_BASE = "gen-base"
GEN_BASE_EVAL = "gen-base-eval"
GEN_TRAINED = "gen-trained"
GEN_TRAINED_EVAL = "gen-trained-eval"

# Critique and revise tab (one SL-CAI trace on demand)
CRITIQUE_PROMPT = "critique-prompt"
CRITIQUE_EXAMPLE = "critique-example"
CRITIQUE_BUTTON = "critique-button"
CRITIQUE_RESULT = "critique-result"

# Impact tab
IMPACT_LIMIT = "impact-limit"
IMPACT_BUTTON = "impact-button"
IMPACT_SUMMARY = "impact-summary"
IMPACT_TABLE = "impact-table"
IMPACT_JSON = "impact-json"
IMPACT_CSV = "impact-csv"

# Runs tab
RUNS_REFRESH = "runs-refresh"
RUNS_TABLE = "runs-table"

# Gradio API names (gradio_client: client.predict(..., api_name="/evaluate"))
API_LOAD_MODEL = "load_model"
API_EVALUATE = "evaluate"
API_GENERATE = "generate"
API_START_TRAINING = "start_training"
API_TRAINING_STATUS = "training_status"
API_CANCEL_TRAINING = "cancel_training"
API_LIST_RUNS = "list_runs"
API_IMPACT = "run_impact"
API_CRITIQUE = "critique"
