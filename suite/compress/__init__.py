"""Approximation methods for trained or trainable layers, one file per family (the deck
"Neural Network Approximation: Low rank, Sparsity, and Quantization", its first half):

- `lowrank`: truncated SVD, A_k = U_k S_k V_k^T, as a two-layer Linear or Conv2d;
- `kronecker`: Kronecker convolutions, W = sum_i A_i (x) B_i (Zhou et al. 2015);
- `tensor_train`: TT-matrix Linear layers and TT-SVD (Novikov et al. 2015; Oseledets 2011);
- `pruning`: magnitude pruning with masks kept through retraining (Han et al. 2015, 2016);
- `weight_sharing`: k-means weight sharing with trained centroids (Deep Compression, stage 2);
- `huffman`: the relative sparse index and Huffman coding, sizes from bytes written (stage 3).

Each module quotes its paper's equation; tests/test_compress_*.py check each on a case small
enough to compute by hand.
"""
