// Go 1.19 peers of goro's benchmark programs (bench/compare.py builds them). No dependencies.
module gorobench

go 1.19
