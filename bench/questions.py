"""Customer questions the benchmark sends: both languages, mostly on-topic, a few off-topic.

Written for the benchmark (not the retrieval test set); the off-topic ones get escalated, so the
worker benchmark exercises both outcomes and the escalation stream.
"""

from __future__ import annotations

QUESTIONS: tuple[str, ...] = (
    "my usdt deposit has not arrived after an hour, what should i do",
    "how many confirmations does a bitcoin deposit need",
    "what is the withdrawal fee for ETH",
    "I lost my phone with google authenticator, how do I reset 2FA",
    "how do i create an API key for my trading bot",
    "what documents do I need for KYC level 2",
    "can I open a sub-account for my team",
    "how does funding rate work on perpetual futures",
    "I think I got a phishing email pretending to be from you",
    "how to buy USDT with a bank card",
    "is P2P trading safe, what if the seller does not release the coins",
    "why is my withdrawal still pending review",
    "what is the daily withdrawal limit without verification",
    "the weather in Paris next weekend",
    "recommend me a good pizza recipe",
    "充值USDT一直没有到账怎么办",
    "比特币提现手续费是多少",
    "手机丢了，谷歌验证器怎么重置",
    "如何创建API密钥",
    "实名认证需要哪些证件",
    "合约的资金费率是怎么计算的",
    "收到钓鱼邮件怎么办",
    "P2P交易卖家不放币怎么办",
    "今天晚上吃什么比较好",
)
