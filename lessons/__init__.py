"""课程：lessons/NN_名字.py 是按顺序学习的各课，exercises/ 是配套练习，
check.py 是练习的检查器（在仓库根目录运行 python -m lessons.check）。"""
