"""Task modules: one per experiment family, on top of the core (runs, params, data, models, train,
embed, score, viz, report, executor, cli), which never imports them (tests/test_layering.py).

    mnist       MNIST CNN and ViT pieces (01, 02)
    classifier  encoder + head text classification, CoLA (03) and the review stages (07)
    mlm         masked-language-model domain adaptation (04)
    matching    JD similarity, TestSheet, recommendations (04, 05)
    sts         KLUE-STS cross- and bi-encoders (06)
    reviews     Korean review sentiment / keywords / per-keyword sentiment (07)
"""
