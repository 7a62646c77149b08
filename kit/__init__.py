"""dslc's training kit: the code that `dslc train` runs and an ejected train.py imports.

One definition of what training means, shared by dslc and by the plain PyTorch
folder `dslc emit` writes (which holds a copy of this folder as `dslc_kit/`):

    seeding.py    seeds, each epoch's shuffling generator, each rank's seed
    batches.py    splits of tensors, held-out rows, an epoch's batches
    optim.py      optimizers and learning-rate schedules from plain settings
    metrics.py    metrics as a sum and a count per batch, exact over a split
    loop.py       the loop: steps, warm-up, clipping, schedules, log and evaluation
                  events, early stopping, the best evaluation
    script.py     what an ejected train.py's main() calls: options, device, run, save
    text.py       tokenising, vocabularies, encoding, token windows
    csv_text.py   reading CSV files (.csv, .csv.gz, .csv.bz2)
    cells.py      table cells: missing markers, numbers, category names and order
    tables.py     table columns: dropping and filling missing cells, categories,
                  standardize/min_max statistics, fitted on the training rows
    pictures.py   pictures to model inputs (Pillow)

Every module imports the standard library, numpy, torch or Pillow only, never
dslc (an import-linter contract says so), and this file imports nothing, so
the torch-free parts (cells, csv_text, text, tables, pictures) stay torch-free.
"""
