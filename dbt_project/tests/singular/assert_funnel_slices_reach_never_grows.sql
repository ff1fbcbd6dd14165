-- "Reached" is cumulative in every slice too: the next step never has more leads, and the
-- first step holds every lead of the slice.
select pipeline_id, status_id, channel, responsible_user_id, created_month,
    leads_reached, leads_reached_next, leads_in_pipeline
from {{ ref('fct_funnel_stage_slices') }}
where leads_reached_next > leads_reached
    or (stage_order = 1 and leads_reached <> leads_in_pipeline)
