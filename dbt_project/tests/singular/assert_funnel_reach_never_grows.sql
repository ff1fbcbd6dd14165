-- "Reached" is cumulative: a later funnel step can never be reached by more leads.
select pipeline_id, status_id, leads_reached, leads_reached_next
from {{ ref('fct_funnel_stage_conversion') }}
where leads_reached_next > leads_reached
