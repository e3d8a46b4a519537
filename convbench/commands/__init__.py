"""One module per CLI subcommand family; each takes the parsed argparse namespace."""
