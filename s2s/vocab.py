"""Special token ids, the same in every vocabulary: padding, unknown, begin and end of sentence.

A leaf module: models, search and batching import these ids without importing the tokenizer.
"""

PAD, UNK, BOS, EOS = 0, 1, 2, 3
NEVER_OUTPUT = (PAD, BOS)  # search never emits these (they are inputs only)
EOS_PIECE = "</s>"
