"""The implementation of :mod:`mlpx.datasets`, split by job, plus its package data.

Import the public API from :mod:`mlpx.datasets`; the modules here are its
implementation, and their layout may change:

* :mod:`mlpx.data.idx` -- the IDX reader (:func:`~mlpx.data.idx.read_idx`,
  :class:`~mlpx.data.idx.IDXFormatError`).
* :mod:`mlpx.data.download` -- downloads from mirrors with checksum verification
  (:func:`~mlpx.data.download.fetch`, :class:`~mlpx.data.download.DownloadError`).
* :mod:`mlpx.data.cache` -- the cache-folder policy
  (:func:`~mlpx.data.cache.default_data_dir`) and the checks on folder arguments.
* :mod:`mlpx.data.catalog` -- the known datasets: files, mirrors, pinned checksums,
  class names (:data:`~mlpx.data.catalog.DATASETS`).
* :mod:`mlpx.data.loaders` -- :func:`~mlpx.data.loaders.load_mnist`,
  :func:`~mlpx.data.loaders.load_fashion_mnist`,
  :func:`~mlpx.data.loaders.load_sample`, :func:`~mlpx.data.loaders.load_dataset`.
* :mod:`mlpx.data.preprocessing` -- :func:`~mlpx.data.preprocessing.scale`,
  :func:`~mlpx.data.preprocessing.standardize`,
  :func:`~mlpx.data.preprocessing.one_hot`.
* :mod:`mlpx.data.text` -- text as token ids for language models
  (:class:`~mlpx.data.text.Vocabulary`, :func:`~mlpx.data.text.make_windows`,
  :func:`~mlpx.data.text.text_windows`) and Debian's word lists
  (:func:`~mlpx.data.text.load_word_list`).

Package data: ``fashion_mnist_sample.npz`` (the embedded Fashion-MNIST sample, see
``README.md`` here) and ``LICENSE-fashion-mnist.txt``.

Imports within the package go one way: ``cache``, ``catalog`` and ``preprocessing``
import no other module of it, ``idx`` and ``download`` import only ``cache``, and
``loaders`` imports the rest, ``text`` none of them; nothing here imports another
part of mlpx.
"""
