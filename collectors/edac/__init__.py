"""ECC memory errors (EDAC): corrected and uncorrected, per memory controller, chip-select row and DIMM."""
