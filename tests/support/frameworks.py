"""Framework files shared by several test modules: 成都市's own decomposition of the sample province
framework (data/sample-framework.yaml) for its two counties."""

CITY = """\
issuer: "5101"
issuer_name: 成都市
cycle: "2026"
class: 县市区
units:
  - {code: "510104", name: 锦江区}
  - {code: "510105", name: 青羊区}
indicators:
  - code: A
    name: 经济发展
    weight: 40
    children:
      - {code: A1, name: 地区生产总值, weight: 20, unit: 亿元, target: 11500, link: {indicator: A1, rule: sum}}
      - {code: A2, name: 一般公共预算收入, weight: 10, unit: 亿元, target: 950, link: {indicator: A2}}
      - {code: A3, name: 固定资产投资, weight: 10, unit: 亿元, target: 4500, link: {indicator: A3}}
  - code: B
    name: 民生保障
    weight: 30
    children:
      - {code: B1, name: 城镇新增就业, weight: 15, unit: 人, target: 130000, link: {indicator: B1}}
      - {code: B2, name: 新增公办学位, weight: 15, unit: 个, target: 24000, link: {indicator: B2}}
  - code: C
    name: 生态环境
    weight: 20
    children:
      - {code: C1, name: PM2.5年均浓度, weight: 10, unit: 微克/立方米, direction: lower, target: 35, rollup: mean,
         link: {indicator: C1, rule: mean}}
      - {code: C2, name: 新增造林面积, weight: 10, unit: 公顷, target: 600, link: {indicator: C2}}
  - code: D
    name: 安全生产
    weight: 10
    children:
      - {code: D1, name: 生产安全事故起数, weight: 10, unit: 起, direction: lower, target: 40, link: {indicator: D1}}
"""
