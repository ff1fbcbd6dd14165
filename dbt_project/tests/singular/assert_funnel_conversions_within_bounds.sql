-- Conversions and win rates are shares: within [0, 1] in the funnel and in every slice.
select 'fct_funnel_stage_conversion' as mart, pipeline_id, status_id, conversion_to_next, win_rate
from {{ ref('fct_funnel_stage_conversion') }}
where conversion_to_next < 0 or conversion_to_next > 1 or win_rate < 0 or win_rate > 1
union all
select 'fct_funnel_stage_slices', pipeline_id, status_id, conversion_to_next, win_rate
from {{ ref('fct_funnel_stage_slices') }}
where conversion_to_next < 0 or conversion_to_next > 1 or win_rate < 0 or win_rate > 1
