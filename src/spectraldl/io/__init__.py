"""Files in and out.

Archive readers, the HDF5 dataset, prediction tables, labels, published CSVs
and the bundled data.
"""
