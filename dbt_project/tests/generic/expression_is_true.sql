{#- Fails for every row where `expression` is not true (a model-level test). -#}
{% test expression_is_true(model, expression, where_clause=none) %}

select *
from {{ model }}
where not ({{ expression }})
{%- if where_clause %} and ({{ where_clause }}){% endif %}

{% endtest %}
